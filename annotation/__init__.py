"""The annotation review queue (web app on the build store)."""
