"""Camera backends behind one interface: the Pi camera, recorded video, still images."""
