"""What the tests share: momd as a subprocess (momd), XML-RPC clients (rpc), the
vdsm double and its certificates (vdsm_double, certs), the shared policies,
waiting for a condition (wait) and a free TCP port (net)."""
