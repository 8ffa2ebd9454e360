"""CromSS: cross-modal pretraining with noisy labels for remote-sensing segmentation."""
__version__ = "0.2.0"
