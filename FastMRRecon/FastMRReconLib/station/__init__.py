"""The reading station: a small web server that lets readers score a blinded reader study (``study``) from a
browser, and the organizer follow it (``fastmrrecon reading-station``). ``keys``: the links' secret tokens;
``slices``: the images the browsers see; ``server``: the HTTP routes; ``pages``: the HTML and JavaScript."""
