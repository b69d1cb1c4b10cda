"""`forensics` and `python -m forensics`: the command, where Ctrl-C at any moment (even while
the command is still loading) exits 130 with one line, never a traceback."""

from __future__ import annotations

import os
import signal
import sys

from forensics.heap import tune_heap

INTERRUPTED = 130
_interrupted = False


def _on_interrupt(signum: int, frame: object) -> None:
    """Remember the Ctrl-C, then interrupt as Python would. The flag matters when the
    KeyboardInterrupt lands in a finalizer, where Python prints and drops it."""
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def _remember(signum: int, frame: object) -> None:
    global _interrupted
    _interrupted = True


def _run() -> int:
    """The command's exit code. click would answer Ctrl-C with `Aborted!` and exit 1, so it
    runs outside click's standalone mode and its usage errors are shown here."""
    import click

    from forensics.cli import cli

    try:
        code = cli.main(prog_name="forensics", standalone_mode=False)
    except click.exceptions.Abort as err:
        raise KeyboardInterrupt from err
    except click.ClickException as err:  # a usage error quotes what was typed: mask it
        import io

        from forensics.redact import redact_text
        from forensics.text import term_safe

        shown = io.StringIO()
        err.show(file=shown)
        sys.stderr.write(term_safe(redact_text(shown.getvalue())))
        return err.exit_code
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else int(done.code is not None)
    return code if isinstance(code, int) else 0


def _quiet_interrupts(unraisable: sys.UnraisableHookArgs) -> None:
    """A Ctrl-C that lands in a finalizer is remembered (see `_on_interrupt`), not printed."""
    if not issubclass(unraisable.exc_type, KeyboardInterrupt):
        sys.__unraisablehook__(unraisable)


def main() -> None:
    """Console-script entry point."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_interrupt)
        sys.unraisablehook = _quiet_interrupts
    tune_heap()
    try:
        try:
            code = _run()
        except KeyboardInterrupt:
            code = None
        finally:  # from here on a Ctrl-C is only remembered: the exit below says 130
            signal.signal(signal.SIGINT, _remember)
    except KeyboardInterrupt:  # it came while the handler was being replaced
        signal.signal(signal.SIGINT, _remember)
        code = None
    if code is None or (_interrupted and code != INTERRUPTED):
        sys.stderr.write("forensics: interrupted\n")
        code = INTERRUPTED
    if code == INTERRUPTED or _interrupted:
        # Python ends a process whose KeyboardInterrupt it once saw unhandled (in a finalizer,
        # say) by killing itself with SIGINT; the exit status must stay 130. Every file this
        # run wrote was closed or removed on the way here.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(INTERRUPTED)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the run is over: its result stands
    sys.exit(code)


if __name__ == "__main__":
    main()
