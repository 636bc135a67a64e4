"""The web console: server-rendered pages for people, served by the gateway at `/` on its
port (the JSON API stays at `/api/`). It holds no business rule: every page calls the API's
own operations (services/gateway/service.py), so roles and validation live in one place.

web.py        pages, session cookie, CSRF, flash, security headers, error pages
catalogue/    every word shown, by language
formatting.py dates, durations, sizes as people read them
views/        one module per area; ConsoleViews gathers them into the gateway
templates/    Jinja2, autoescaped;  static/  our own CSS and JS (no CDN)
"""
