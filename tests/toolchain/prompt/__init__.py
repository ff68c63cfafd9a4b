# noqa: RUF100
