"""PyTorch artifacts a failed run leaves: checkpoints, CUDA memory snapshots and NCCL
Flight Recorder dumps. Snapshots and dumps are plain pickles read without torch;
checkpoints in safetensors format are read without torch too; `.bin`/`.pt` files and
`--device cuda` need the optional extra `pip install 'forensics[torch]'`."""
