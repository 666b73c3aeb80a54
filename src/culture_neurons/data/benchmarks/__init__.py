"""The registered benchmarks. Importing this package registers every one of them, in this order."""

# isort: off
from . import blend  # noqa: F401
from . import culturalbench  # noqa: F401
from . import normad  # noqa: F401
from . import worldvaluesbench  # noqa: F401
from . import countryrc  # noqa: F401
from . import nlu  # noqa: F401
from . import nlu_suite  # noqa: F401
from . import demo  # noqa: F401
# isort: on
