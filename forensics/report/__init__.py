"""Renderers of one `Analysis`: Markdown, JSON and the rich terminal view."""
