"""The training side of each profile (:mod:`masuka.models.architectures`): latent/text encoding and the loss.

LoRA targets, defaults and presets are facts of the profile; the classes here hold what needs torch.

FLUX.1, FLUX.2, SD3.5, Qwen-Image and Z-Image learn by flow matching (noisy = (1 - σ)·x + σ·ε, target ε - x,
σ and timesteps from the model's ``FlowMatchEulerDiscreteScheduler``, as in diffusers'
``train_dreambooth_lora_*`` examples); each packs latents and passes text the way its pipeline does. FLUX.1 dev
gets its guidance embedding. SDXL learns by denoising with the scheduler's ``prediction_type`` (epsilon or v)
and its size/crop conditioning (``add_time_ids``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from masuka.errors import InvalidInput
from masuka.models import architectures


class Architecture(ABC):
    """Base: the parts flow-matching transformers share (FLUX.1, FLUX.2, SD3, Qwen-Image, Z-Image)."""

    name = ""
    weighting = "none"
    negative_in_samples = True

    def __init__(self, pipe: Any, options: Any, max_sequence_length: int | None = None):
        from diffusers import FlowMatchEulerDiscreteScheduler

        profile = architectures.require(self.name)
        self.model_attr = profile.denoiser
        self.target_modules = list(profile.trains.target_modules)
        self.text_encoder_targets = list(profile.trains.text_encoder_targets)
        self.guidance_argument = profile.guidance_argument
        self.size_multiple = profile.size_multiple
        self.vae_scale = pipe.vae_scale_factor
        self.scaling = pipe.vae.config.get("scaling_factor") or 1.0
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



def pad_tokens(embeds: Any, length: int) -> tuple[Any, Any]:
    """``[1, L, D]`` text embeddings padded (or cut) to ``length`` tokens, with the mask of the real ones, so that
    captions of different lengths batch together."""
    import torch

    embeds = embeds[:, :length]
    mask = torch.zeros(embeds.shape[0], length, dtype=torch.bool, device=embeds.device)
    mask[:, :embeds.shape[1]] = True
    padding = embeds.new_zeros(embeds.shape[0], length - embeds.shape[1], embeds.shape[2])
    return torch.cat([embeds, padding], dim=1), mask


class Flux2(Architecture):
    """FLUX.2 [klein]: Qwen3 embeddings, VAE latents 2x2-patchified and normalised by the VAE's batch-norm statistics,
    packed into a token sequence with 4-axis position ids."""

    name = "flux2"

    def encode_image(self, pipe: Any, pixels: Any) -> Any:
        import torch

        latents = pipe._patchify_latents(pipe.vae.encode(pixels).latent_dist.mode())
        mean = pipe.vae.bn.running_mean.view(1, -1, 1, 1).to(latents.device, latents.dtype)
        std = torch.sqrt(pipe.vae.bn.running_var.view(1, -1, 1, 1) + pipe.vae.config.batch_norm_eps)
        return (latents - mean) / std.to(latents.device, latents.dtype)

    def encode_text(self, pipe: Any, captions: list[str], device: Any) -> dict[str, Any]:
        embeds, _ids = pipe.encode_prompt(captions, device=device, max_sequence_length=self.max_sequence_length or 512)
        return {"prompt_embeds": embeds}

    def predict(self, model: Any, noisy: Any, timesteps: Any, text: dict[str, Any]) -> Any:
        from diffusers import Flux2KleinPipeline

        batch, channels, height, width = noisy.shape
        embeds = text["prompt_embeds"]
        output = model(hidden_states=Flux2KleinPipeline._pack_latents(noisy), timestep=timesteps / 1000,
                       guidance=None, encoder_hidden_states=embeds,
                       txt_ids=Flux2KleinPipeline._prepare_text_ids(embeds).to(noisy.device),
                       img_ids=Flux2KleinPipeline._prepare_latent_ids(noisy).to(noisy.device), return_dict=False)[0]
        return output[:, :height * width].reshape(batch, height, width, channels).permute(0, 3, 1, 2)


class QwenImage(Architecture):
    """Qwen-Image: Qwen2.5-VL embeddings with their mask, Wan-style VAE latents (one frame) normalised by the VAE's
    per-channel mean and std, packed 2x2."""

    name = "qwen_image"

    def encode_image(self, pipe: Any, pixels: Any) -> Any:
        import torch

        latents = pipe.vae.encode(pixels.unsqueeze(2)).latent_dist.mode()[:, :, 0]
        config = pipe.vae.config
        mean = torch.tensor(config.latents_mean).view(1, -1, 1, 1).to(latents.device, latents.dtype)
        std = torch.tensor(config.latents_std).view(1, -1, 1, 1).to(latents.device, latents.dtype)
        return (latents - mean) / std

    def encode_text(self, pipe: Any, captions: list[str], device: Any) -> dict[str, Any]:
        embeds, _mask = pipe.encode_prompt(captions, device=device, max_sequence_length=self.max_sequence_length or 512)
        embeds, mask = pad_tokens(embeds, self.max_sequence_length or 512)
        return {"prompt_embeds": embeds, "prompt_embeds_mask": mask}

    def predict(self, model: Any, noisy: Any, timesteps: Any, text: dict[str, Any]) -> Any:
        from diffusers import QwenImagePipeline

        batch, channels, height, width = noisy.shape
        packed = QwenImagePipeline._pack_latents(noisy, batch, channels, height, width)
        output = model(hidden_states=packed, timestep=timesteps / 1000, guidance=None,
                       encoder_hidden_states=text["prompt_embeds"],
                       encoder_hidden_states_mask=text["prompt_embeds_mask"],
                       img_shapes=[[(1, height // 2, width // 2)]] * batch, return_dict=False)[0]
        return QwenImagePipeline._unpack_latents(output, height * self.vae_scale, width * self.vae_scale,
                                                 self.vae_scale)[:, :, 0]


class ZImage(Architecture):
    """Z-Image: Qwen3 embeddings (the real tokens of each caption), latents as one-frame lists; the transformer
    reads time as 1 - σ and predicts the negated flow."""

    name = "z_image"

    def encode_text(self, pipe: Any, captions: list[str], device: Any) -> dict[str, Any]:
        import torch

        embeds, _negative = pipe.encode_prompt(captions, device=device, do_classifier_free_guidance=False,
                                               max_sequence_length=self.max_sequence_length or 512)
        rows = [pad_tokens(e.unsqueeze(0), self.max_sequence_length or 512) for e in embeds]
        return {"prompt_embeds": torch.cat([e for e, _m in rows]), "prompt_mask": torch.cat([m for _e, m in rows])}

    def sample_kwargs(self, text: dict[str, Any], empty: dict[str, Any]) -> dict[str, Any]:
        return {"prompt_embeds": self._unpadded(text), "negative_prompt_embeds": self._unpadded(empty)}

    @staticmethod
    def _unpadded(text: dict[str, Any]) -> list[Any]:
        return [embeds[mask.bool()] for embeds, mask in zip(text["prompt_embeds"], text["prompt_mask"], strict=True)]

    def predict(self, model: Any, noisy: Any, timesteps: Any, text: dict[str, Any]) -> Any:
        import torch

        output = model(list(noisy.unsqueeze(2).unbind(0)), (1000 - timesteps) / 1000, self._unpadded(text),
                       return_dict=False)[0]
        return -torch.stack(output).squeeze(2)


def trainer_for(architecture: str) -> type[Architecture]:
    """The training class a profile names (``Training.trainer``): any subclass of :class:`Architecture`, also one
    that subclasses another trainer; :class:`InvalidInput` when the profile does not train or names no such class."""
    profile = architectures.require(architecture)
    name = profile.trains.trainer
    trainers = _trainers()
    if name not in trainers:
        raise InvalidInput(f"MASUKA cannot train LoRAs for {profile.label}: its profile names the trainer {name!r}, "
                           f"which is not a trainer class (known: {', '.join(sorted(trainers))}).")
    return trainers[name]


def _trainers() -> dict[str, type[Architecture]]:
    """Every trainer class by name: the subclasses of :class:`Architecture`, however deep."""
    found: dict[str, type[Architecture]] = {}
    waiting = Architecture.__subclasses__()
    while waiting:
        cls = waiting.pop()
        found[cls.__name__] = cls
        waiting += cls.__subclasses__()
    return found
