"""The web page's files: plain HTML, CSS and JavaScript modules written ahead, served as they are (no build step,
no CDN). Nothing here runs on the server."""

from pathlib import Path

STATIC = Path(__file__).parent / "static"  # served as they are under /ui/assets
INDEX = Path(__file__).parent / "index.html"  # served at / with the page's security headers
