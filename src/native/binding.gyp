{
  "targets": [
    {
      "target_name": "itd_native",
      "sources": ["kernels.c", "forward.c"],
      "cflags": ["-O3", "-fno-math-errno", "-ffp-contract=fast", "-pthread"],
      "ldflags": ["-pthread"]
    }
  ]
}
