"""The small pieces the tap, the loader and verify share; they import none of the three."""
