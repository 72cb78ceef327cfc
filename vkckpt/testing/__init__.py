"""Helpers shared by the test suite and `vkckpt regress`: golden runs and freeze/thaw trials."""
