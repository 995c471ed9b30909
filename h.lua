wrk.headers["x-api-key"] = "lk_o2SyU49jVOQ7Qx8u46eQJ5EVtF18emSyef5SYhkSRxT8PS9s"
