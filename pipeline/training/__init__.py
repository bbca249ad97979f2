"""`shardscribe train`: the training config, building the model to train, image-text
examples from shards, the objective (cross-entropy plus optional CTC), and the Ray
Train loop with its evaluation and checkpoints."""
