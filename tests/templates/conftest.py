from tests.agents.conftest import _fast_model_settings, openai_key  # noqa: F401
from tests.fakes.fixtures import *  # noqa: F401,F403  (openai_server)
