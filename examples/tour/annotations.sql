-- Three AI annotations of one image, waiting for review, as the annotation pipeline
-- writes them (`strata worker` with a vision provider configured does this for real).
WITH image AS (
    INSERT INTO images (url) VALUES ('https://img.example/raven-on-a-fence.jpg')
    RETURNING id
)
INSERT INTO annotations (image_id, label, bounding_box, vision_generated, vision_confidence,
                         vision_provider)
SELECT image.id, a.label, a.box::jsonb, true, a.confidence, 'openai'
FROM image, (VALUES
    ('Common raven', 0.91, '{"topLeft": {"x": 0.20, "y": 0.15}, "bottomRight": {"x": 0.70, "y": 0.80}, "width": 0.50, "height": 0.65}'),
    ('beak',         0.62, '{"topLeft": {"x": 0.55, "y": 0.20}, "bottomRight": {"x": 0.68, "y": 0.30}, "width": 0.13, "height": 0.10}'),
    ('fence post',   0.41, '{"topLeft": {"x": 0.30, "y": 0.70}, "bottomRight": {"x": 0.45, "y": 1.00}, "width": 0.15, "height": 0.30}')
) AS a(label, confidence, box);
