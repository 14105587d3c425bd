"""The live monitor of a session (``microexp monitor``, ``monitor_node``): a web page on this machine that shows the
event frames with the face box, the camera images, the AU output, the sensors' streaming and clock state, the
protocol and the recorder. :mod:`.state` holds what the page shows (no ROS), :mod:`.server` serves it (aiohttp),
``page/`` is the page itself (plain HTML, CSS and JavaScript, nothing fetched from elsewhere)."""
