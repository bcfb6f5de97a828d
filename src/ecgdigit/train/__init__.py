"""Training: datasets, losses and the stage-2 loop (`ecgdigit.train.loop.train`)."""
