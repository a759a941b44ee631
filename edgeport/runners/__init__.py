"""Where a .tflite runs: this host (local), an Android phone (adb) or a Linux board (ssh)."""
