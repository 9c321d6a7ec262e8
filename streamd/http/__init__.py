"""The one HTTP port: health, metrics, webhooks and the wallboard."""
