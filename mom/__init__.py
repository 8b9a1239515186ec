"""MOM, the Memory Overcommitment Manager for KVM hosts."""

__version__ = "0.1.0"
