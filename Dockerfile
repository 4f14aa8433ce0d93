# MASUKA for a Hugging Face Docker Space (GPU hardware) or a local GPU box.
#   docker build -t masuka .
#   docker run --gpus all -p 7860:7860 -v masuka-data:/data -e MASUKA_AUTH=me:secret -e MASUKA_ADMINS=me masuka
# (MASUKA_ADMINS: with a sign-in list only the users it names are admins, who save API keys and defaults.)
# CPU-only image: docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu -t masuka-cpu .
FROM python:3.11-slim

ARG TORCH_INDEX=""
RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*

# Spaces run the container as uid 1000; so do we, everywhere. /data belongs to that user, so a new named volume
# mounted there (-v masuka-data:/data) takes its owner and is writable.
RUN useradd -m -u 1000 user && mkdir -p /data && chown user:user /data
USER user
ENV HOME=/home/user PATH=/home/user/.local/bin:$PATH PYTHONUNBUFFERED=1 \
    GRADIO_ANALYTICS_ENABLED=False MASUKA_HOST=0.0.0.0
WORKDIR /home/user/app

# The pinned set CI tests (requirements.lock); torch's build (CPU or CUDA) comes from TORCH_INDEX when given.
COPY --chown=user requirements.lock .
RUN if [ -n "$TORCH_INDEX" ]; then pip install --no-cache-dir --user "$(grep -E '^torch==' requirements.lock | cut -d' ' -f1)" --index-url "$TORCH_INDEX"; fi \
 && pip install --no-cache-dir --user -r requirements.lock
COPY --chown=user . .

EXPOSE 7860
# On a Docker Space (SYSTEM=spaces) Gradio starts its Spaces hot-reloader, which needs the `spaces` package and
# logs "RuntimeError: `spaces` package is required to run hot-reloading in Spaces" when it is absent: harmless
# (only that reloader stops; the app serves), and Gradio has no setting that turns it off.
# Persistent storage (/data on Spaces, or a mounted volume) keeps outputs, LoRAs and the model cache.
CMD ["bash", "-c", "if [ -w /data ]; then export MASUKA_DATA_DIR=${MASUKA_DATA_DIR:-/data/masuka} HF_HOME=${HF_HOME:-/data/huggingface}; elif [ -e /data ]; then echo 'warning: /data is not writable by uid 1000: outputs stay in the container and are lost with it' >&2; fi; exec python app.py --host 0.0.0.0 --port ${PORT:-7860}"]
