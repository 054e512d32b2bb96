"""Self-contained HTML reports (inline CSS and images, no CDN, readable offline)."""
