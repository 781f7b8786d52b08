"""edgewatch: a privacy-preserving edge camera appliance.

Faces are detected and matched on the device against a watch-list; the
biometric data of anyone who does not match is discarded as soon as the
decision is made, and only match decisions leave the pipeline.
"""

__version__ = "0.4.0"
