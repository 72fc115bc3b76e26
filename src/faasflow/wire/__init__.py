"""What crosses process boundaries: the hop, its canonical encoding and its signature.

Used alike by the engine (which makes and runs hops), the transports (which carry them)
and the flow server (which checks what arrives).
"""
