"""The device application, a package on both sides: `firmware.app` on CPython, `app` on the board.

Modules import each other relatively (`from . import mqtt`), which MicroPython supports, so the same
files work under either name. main.py and boot.py are the board's root scripts, not package modules.

Conventions that keep it MicroPython code (tests/unit/firmware/test_micropython.py runs it on a real
MicroPython): no typing or dataclasses, no walrus, no f-string "=" specifiers or quotes inside f-string
expressions, no zip(strict=), exceptions re-raised `from None` with the cause in the message
(MicroPython prints a warning for `from err`).
"""
