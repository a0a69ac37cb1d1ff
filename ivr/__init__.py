"""IVR menus over FastAGI: the menu files, their interpreter, the FastAGI server."""
