# Runs after boot.py on every start. The application lives in the `app` package (this folder on the
# controller, /app on the board); this file only starts it, so it never needs to change.
from app import device

device.main()
