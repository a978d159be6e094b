"""The dashboard: a static web app (no build step) over the same API and keys."""
