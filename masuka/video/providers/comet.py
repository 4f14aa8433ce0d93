"""CometAPI: the OpenAI ``/v1/videos`` routes at CometAPI's base URL, for its Sora 2 and Veo 3 models."""

from __future__ import annotations

from masuka.video.providers.openai import OpenAIVideos


class CometVideos(OpenAIVideos):
    name = key_name = "comet"
