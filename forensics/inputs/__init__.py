"""Inputs: paths in, `Source`s out. Opens files, folders and stdin, decompresses, streams
byte blocks, and knows the folder layouts a training job leaves behind."""
