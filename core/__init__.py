"""What serving and training share: the models' code and the avatar's layout. Services and pipelines stand on it."""
