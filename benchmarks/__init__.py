"""`make bench`: side-by-side measurements, each next to a baseline run in the same process, with goals."""
