"""Running a stage on every GPU and every machine: the device of each process, the
torchrun process group, relaunching a stage under torchrun, and the resumable chunks the
data stages share their images in."""
