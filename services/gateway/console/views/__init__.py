"""The console's pages, one module per area, gathered into one mixin for the gateway."""
from services.gateway.console.views.home import HomeViews


class ConsoleViews(HomeViews):
    """Every console page; the gateway's service class inherits it."""
