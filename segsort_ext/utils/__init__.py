"""The lowest layer: constants, argument checks, torch.distributed helpers and plotting
colours. Imports only torch and numpy; every other subpackage may import it."""
