"""The web page for browsers: content negotiation at ``/`` and the page's HTML shell.

The page carries no model data: its scripts (``static/``) read everything from the JSON API,
with the browser tab's API key when authentication is on.
"""
