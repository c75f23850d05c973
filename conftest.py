from zoo._compat import prepare_tensorflow

# test modules import keras/tensorflow and torchvision in any order: load Triton first (see there)
prepare_tensorflow()

pytest_plugins = ["zoo.testing"]
