"""The training side of each profile (:mod:`masuka.models.architectures`): latent/text encoding and the loss.

LoRA targets, defaults and presets are facts of the profile; the classes here hold what needs torch.

Flux and SD3.5 learn by flow matching (noisy = (1 - σ)·x + σ·ε, target ε - x, σ and timesteps from the
model's ``FlowMatchEulerDiscreteScheduler``); Flux latents are packed into 2×2 patches and Flux dev gets its
guidance embedding. SDXL learns by denoising with the scheduler's ``prediction_type`` (epsilon or v) and its
size/crop conditioning (``add_time_ids``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from masuka.models import architectures


class Architecture(ABC):
    """Base: the parts flow-matching transformers share (FLUX.1, FLUX.2, SD3, Qwen-Image, Z-Image)."""

    name = ""
    weighting = "none"
    negative_in_samples = True

    def __init__(self, pipe: Any, options: Any, max_sequence_length: int | None = None):
        from diffusers import FlowMatchEulerDiscreteScheduler

        profile = architectures.get(self.name)
        self.model_attr = profile.denoiser
        self.target_modules = list(profile.training.target_modules)
        self.text_encoder_targets = list(profile.training.text_encoder_targets)
        self.guidance_argument = profile.guidance_argument
        self.size_multiple = profile.size_multiple
        self.vae_scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        self.scaling = pipe.vae.config.scaling_factor
        self.shift = pipe.vae.config.get("shift_factor") or 0.0
        self.guidance = options.guidance
        self.max_sequence_length = max_sequence_length
        self.model_config = getattr(pipe, self.model_attr).config
        if self.model_attr == "transformer":
            self.scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)

    def encode_image(self, pipe: Any, pixels: Any) -> Any:
        latents = pipe.vae.encode(pixels).latent_dist.mode()
        return (latents - self.shift) * self.scaling

    @abstractmethod
    def encode_text(self, pipe: Any, captions: list[str], device: Any) -> dict[str, Any]:
        """Caption embeddings, computed once before the loop so the text encoders can be unloaded."""

    def sample_kwargs(self, text: dict[str, Any], empty: dict[str, Any]) -> dict[str, Any]:
        """Pipeline arguments that stand for a prompt whose embeddings were cached (text encoders unloaded)."""
        negative = {f"negative_{key}": value for key, value in empty.items()} if self.negative_in_samples else {}
        return {**text, **negative}

    def noisy(self, latents: Any, generator: Any) -> tuple[Any, Any, Any, Any]:
        """Flow-matching noise: (noisy latents, target, timesteps, per-sample loss weights)."""
        import torch
        from diffusers.training_utils import compute_density_for_timestep_sampling, compute_loss_weighting_for_sd3

        batch = latents.shape[0]
        noise = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
        u = compute_density_for_timestep_sampling(self.weighting, batch, logit_mean=0.0, logit_std=1.0,
                                                  mode_scale=1.29, generator=generator)
        indices = (u * self.scheduler.config.num_train_timesteps).long().clamp(max=len(self.scheduler.timesteps) - 1)
        timesteps = self.scheduler.timesteps[indices].to(latents.device)
        sigmas = self.scheduler.sigmas[indices].to(latents.device, latents.dtype).view(-1, 1, 1, 1)
        noisy = (1.0 - sigmas) * latents + sigmas * noise
        weights = compute_loss_weighting_for_sd3(self.weighting, sigmas)
        return noisy, noise - latents, timesteps, weights

    def loss(self, model: Any, latents: Any, text: dict[str, Any], sizes: list[tuple[int, int]],
             generator: Any) -> Any:
        noisy, target, timesteps, weights = self.noisy(latents, generator)
        prediction = self.predict(model, noisy, timesteps, text)
        return (weights.float() * (prediction.float() - target.float()) ** 2).mean()

    def predict(self, model: Any, noisy: Any, timesteps: Any, text: dict[str, Any]) -> Any:
        """The denoiser's output for the flow-matching :meth:`loss`; SDXL overrides ``loss`` instead."""
        raise NotImplementedError(f"{type(self).__name__} trains through its own loss()")


class Flux(Architecture):
    name = "flux"
    negative_in_samples = False

    def encode_text(self, pipe: Any, captions: list[str], device: Any) -> dict[str, Any]:
        embeds, pooled, _ids = pipe.encode_prompt(captions, prompt_2=None, device=device,
                                                  max_sequence_length=self.max_sequence_length or 512)
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}

    def predict(self, model: Any, noisy: Any, timesteps: Any, text: dict[str, Any]) -> Any:
        import torch
        from diffusers import FluxPipeline

        batch, channels, height, width = noisy.shape
        packed = FluxPipeline._pack_latents(noisy, batch, channels, height, width)
        image_ids = FluxPipeline._prepare_latent_image_ids(batch, height // 2, width // 2, noisy.device, noisy.dtype)
        text_ids = torch.zeros(text["prompt_embeds"].shape[1], 3, device=noisy.device, dtype=noisy.dtype)
        guidance = None
        if self.model_config.guidance_embeds:
            guidance = torch.full((batch,), float(self.guidance), device=noisy.device, dtype=noisy.dtype)
        output = model(hidden_states=packed, timestep=timesteps / 1000, guidance=guidance,
                       pooled_projections=text["pooled_prompt_embeds"], encoder_hidden_states=text["prompt_embeds"],
                       txt_ids=text_ids, img_ids=image_ids, return_dict=False)[0]
        return FluxPipeline._unpack_latents(output, height * self.vae_scale, width * self.vae_scale, self.vae_scale)


class SD3(Architecture):
    name = "sd3"
    weighting = "logit_normal"

    def encode_text(self, pipe: Any, captions: list[str], device: Any) -> dict[str, Any]:
        embeds, _neg, pooled, _neg_pooled = pipe.encode_prompt(
            captions, None, None, device=device, do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence_length or 256)
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}

    def predict(self, model: Any, noisy: Any, timesteps: Any, text: dict[str, Any]) -> Any:
        return model(hidden_states=noisy, timestep=timesteps, encoder_hidden_states=text["prompt_embeds"],
                     pooled_projections=text["pooled_prompt_embeds"], return_dict=False)[0]


class SDXL(Architecture):
    name = "sdxl"

    def __init__(self, pipe: Any, options: Any, max_sequence_length: int | None = None):
        from diffusers import DDPMScheduler

        super().__init__(pipe, options, max_sequence_length)
        self.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)

    def encode_text(self, pipe: Any, captions: list[str], device: Any) -> dict[str, Any]:
        embeds, _neg, pooled, _neg_pooled = pipe.encode_prompt(captions, None, device=device, num_images_per_prompt=1,
                                                               do_classifier_free_guidance=False)
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}

    def loss(self, model: Any, latents: Any, text: dict[str, Any], sizes: list[tuple[int, int]],
             generator: Any) -> Any:
        import torch

        batch = latents.shape[0]
        noise = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
        timesteps = torch.randint(0, self.scheduler.config.num_train_timesteps, (batch,), generator=generator)
        timesteps = timesteps.to(latents.device)
        noisy = self.scheduler.add_noise(latents, noise, timesteps)
        if self.scheduler.config.prediction_type == "v_prediction":
            target = self.scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        height, width = latents.shape[-2] * self.vae_scale, latents.shape[-1] * self.vae_scale
        time_ids = torch.tensor([[*original, 0, 0, height, width] for original in sizes], device=latents.device,
                                dtype=text["prompt_embeds"].dtype)
        prediction = model(noisy, timesteps, encoder_hidden_states=text["prompt_embeds"],
                           added_cond_kwargs={"text_embeds": text["pooled_prompt_embeds"], "time_ids": time_ids},
                           return_dict=False)[0]
        return torch.nn.functional.mse_loss(prediction.float(), target.float())



def trainer_for(architecture: str) -> type[Architecture]:
    """The training class a profile names (``Training.trainer``)."""
    profile = architectures.get(architecture)
    if profile is None or profile.training is None:
        raise KeyError(architecture)
    return {cls.__name__: cls for cls in Architecture.__subclasses__()}[profile.training.trainer]
