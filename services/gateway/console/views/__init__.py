"""The console's pages, one module per area, gathered into one mixin for the gateway."""
from services.gateway.console.views.devices import DeviceViews
from services.gateway.console.views.home import HomeViews
from services.gateway.console.views.operations import OperationsViews
from services.gateway.console.views.people import PeopleViews
from services.gateway.console.views.tickets import TicketViews


class ConsoleViews(HomeViews, TicketViews, PeopleViews, DeviceViews, OperationsViews):
    """Every console page; the gateway's service class inherits it."""
