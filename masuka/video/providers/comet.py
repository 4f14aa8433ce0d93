"""CometAPI: the OpenAI ``/v1/videos`` routes at CometAPI's base URL, for its Sora 2 and Veo 3 models."""

from __future__ import annotations

from masuka.services import Service
from masuka.video.providers.openai import OpenAIVideos


class CometVideos(OpenAIVideos):
    service = Service("comet", "CometAPI", ("COMETAPI_KEY", "COMET_API_KEY"), "MASUKA_COMET_BASE_URL",
                      "https://api.cometapi.com", check_path="/v1/models")
