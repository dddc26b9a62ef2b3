"""``lzn push-to-hub``: upload an export folder to the Hugging Face Hub with huggingface_hub's ``HfApi``.

The token is huggingface_hub's usual one (``hf auth login``, or the ``HF_TOKEN`` variable).
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import HfApi

from lzn_lightning.checkpoints import first_line


def push_folder(folder: Path, repo_id: str, private: bool, commit_message: str, offline: bool) -> str:
    """Create ``repo_id`` (a model repository; kept when it exists) and upload ``folder`` as one commit.

    Args:
        folder: An export folder.
        repo_id: ``owner/name``.
        private: Create the repository private (an existing one keeps its visibility).
        commit_message: The commit's message.
        offline: The user asked for offline Hub access (``HF_HUB_OFFLINE=1``): refused (a push needs the
            network).

    Returns:
        The URL of the commit.
    """
    if offline:
        raise ValueError("lzn push-to-hub uploads to huggingface.co: unset HF_HUB_OFFLINE (it is set to 1)")
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = (
        False  # lzn forces it on for timm's lookups; this upload is what the user asked
    )
    try:
        api = HfApi()
        api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id, folder_path=str(folder), repo_type="model", commit_message=commit_message
        )
    except (OSError, ValueError) as err:  # huggingface_hub's HTTP errors are OSErrors
        raise ValueError(
            f"cannot push to {repo_id}: {first_line(err)} (log in with `hf auth login`, or set HF_TOKEN, "
            "with a token that may write to that namespace)"
        ) from None
    finally:
        constants.HF_HUB_OFFLINE = saved
    return str(getattr(info, "commit_url", None) or f"https://huggingface.co/{repo_id}")
