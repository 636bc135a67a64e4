"""The console's page modules are mixed into one class (ConsoleViews, then the gateway's
Service): a name defined in two of them would silently make one module call the other's
(a helper `_companies` in two modules once turned /admin/usuarios into a 500)."""
from collections import Counter

import services.gateway.service  # noqa: F401  (the operations the views use)
from services.gateway.console.views import ConsoleViews


def test_no_two_page_modules_define_the_same_name():
    defined = Counter(name for view in ConsoleViews.__bases__ for name in vars(view)
                      if not name.startswith("__"))
    assert [name for name, count in defined.items() if count > 1] == []
