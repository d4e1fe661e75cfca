# The outbox: the trace context of the save travels with its row (issue 16, tracing).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('dj_cqrs', '0003_outbox_set_aside'),
    ]

    operations = [
        migrations.AddField(
            model_name='outboxevent',
            name='trace_context',
            field=models.TextField(blank=True, help_text="Headers sent beside the body, as JSON: the W3C trace context of the save (CQRS['tracing']). Empty when tracing is off or the event came from elsewhere.", null=True),
        ),
    ]
