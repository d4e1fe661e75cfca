"""The replica side: models that apply events received from masters."""
