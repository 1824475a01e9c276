"""Provider clients and checks: SMTP (smtplib) and AWS SES (boto3)."""
