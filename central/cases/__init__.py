"""Cases (办件) from the approval system (审批系统): validation, masking, storage, the CSV and MQTT
feeds. The ladder job is ``central.cases.ladder``; the API is ``central.api.cases``."""
