"""The docker provider: one container and one home volume per seat on one Docker host."""
