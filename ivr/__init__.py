"""IVR menus over FastAGI (issue 4)."""
