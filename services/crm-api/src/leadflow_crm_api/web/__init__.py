"""leadflow's web app (/app): server-rendered pages over crm-api's use cases (decision 0040)."""
