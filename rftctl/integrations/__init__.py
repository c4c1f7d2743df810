"""Bridges to other trainers. Each submodule imports its trainer lazily and needs its extra:

rftctl.integrations.trl   ClipB / ClipV inside TRL's GRPOTrainer   (pip install 'rftctl[trl]')
"""
