# The outbox: rows the broker refused are set aside (issue 15); claims of publishers.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('dj_cqrs', '0002_outbox'),
    ]

    operations = [
        migrations.AddField(
            model_name='outboxevent',
            name='set_aside_at',
            field=models.DateTimeField(blank=True, help_text='The broker refused the event (see last_error): it is not sent until retried with `manage.py cqrs_outbox retry`, and holds back no other row.', null=True),
        ),
        migrations.AlterField(
            model_name='outboxevent',
            name='claimed_until',
            field=models.DateTimeField(blank=True, help_text='Until then the row belongs to its claimant: the publisher of the process that committed it, or a relay (databases without SKIP LOCKED). Nobody else sends it.', null=True),
        ),
    ]
