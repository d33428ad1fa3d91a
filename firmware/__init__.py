"""The device firmware: the MicroPython application (app/), its flash layout and filesystem image builder.

`app/` runs on the boards (MicroPython) and on CPython (tests, virtual devices); `layout`, `fsimage` and
`testing` run on the controller only.
"""
